// Parse Continue configs with Continue's own schemas, as the extension does when it loads them.
// stdin: {"yaml": "<config.yaml text>", "json": "<config.json text>"}; stdout: one JSON report line.
import { modelDescriptionSchema, embeddingsProviderSchema } from "@continuedev/config-types";
import { configYamlSchema, convertJsonToYamlConfig, validateConfigYaml } from "@continuedev/config-yaml";
import YAML from "yaml";

const input = JSON.parse(await new Promise((resolve) => {
  let text = "";
  process.stdin.on("data", (chunk) => (text += chunk));
  process.stdin.on("end", () => resolve(text));
}));

function issues(result) {
  return result.success ? [] : result.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`);
}

const report = {};

const yamlConfig = YAML.parse(input.yaml);
const yamlResult = configYamlSchema.safeParse(yamlConfig);
report.yaml = {
  errors: [...issues(yamlResult), ...(yamlResult.success ? validateConfigYaml(yamlResult.data) : [])
    .filter((e) => e.fatal).map((e) => e.message)],
  config: yamlResult.success ? yamlResult.data : null,
};

const jsonConfig = JSON.parse(input.json);
const jsonErrors = [];
for (const [where, model] of [...jsonConfig.models.map((m, i) => [`models.${i}`, m]),
                              ["tabAutocompleteModel", jsonConfig.tabAutocompleteModel]]) {
  jsonErrors.push(...issues(modelDescriptionSchema.safeParse(model)).map((e) => `${where}.${e}`));
}
if (jsonConfig.embeddingsProvider) {
  jsonErrors.push(...issues(embeddingsProviderSchema.safeParse(jsonConfig.embeddingsProvider))
    .map((e) => `embeddingsProvider.${e}`));
}
// Continue migrates config.json to the YAML form with this converter; the result must be valid too.
const converted = convertJsonToYamlConfig({ name: "converted", version: "1.0.0", ...jsonConfig });
jsonErrors.push(...issues(configYamlSchema.safeParse({ name: "converted", version: "1.0.0", ...converted }))
  .map((e) => `converted.${e}`));
report.json = { errors: jsonErrors, converted };

console.log(JSON.stringify(report));
