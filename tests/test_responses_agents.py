"""The OpenAI Agents SDK (PyPI openai-agents), which speaks the Responses API by default, runs an agent
with one function tool against Gatehouse: the model calls the tool, the SDK runs it, the model answers."""

from __future__ import annotations

import openai
from agents import Agent, OpenAIResponsesModel, RunConfig, Runner, function_tool

from tests.conftest import CHAT_MODEL


def test_an_agent_runs_a_function_tool_through_gatehouse(base_url, world):
    asked = []

    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        asked.append(city)
        return f"22 degrees and sunny in {city}"

    client = openai.AsyncOpenAI(base_url=base_url, api_key=world.alice_key, max_retries=0)
    agent = Agent(name="forecaster", instructions="Answer with the weather.", tools=[get_weather],
                  model=OpenAIResponsesModel(model=CHAT_MODEL, openai_client=client))
    # Tracing would send the run to OpenAI's servers.
    result = Runner.run_sync(agent, "Weather in Rome? use get_weather", run_config=RunConfig(tracing_disabled=True))
    assert len(asked) == 1 and isinstance(asked[0], str)
    assert isinstance(result.final_output, str) and result.final_output
    kinds = [item.type for item in result.new_items]
    assert kinds[:2] == ["tool_call_item", "tool_call_output_item"] and kinds[-1] == "message_output_item"
