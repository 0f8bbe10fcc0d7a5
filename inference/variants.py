"""Larger-context variants on the Ollama nodes.

Ollama pins a loaded model's context (num_ctx) for every caller, and a different one reloads it, so one
model cannot serve an 8k chat and a 64k coding agent side by side. A variant (Model.variant_of) is the
same weights under a name of its own on each node that has the base: `/api/create` FROM the base with
`num_ctx` as its parameter, which copies no weights. Its own name gives it its own queue, placement and
measured memory. Ollama keys its runners by the weights, so a variant and its base still evict each other
on one node: the swap actor knows them as one set of weights (ModelRoute.weights).

Runs inside the catalogue sync (synchronous, off the request path).
"""

from __future__ import annotations

import logging

import ollama

from inference.models import VARIANT_MARKER, Model

log = logging.getLogger(__name__)


def reconcile(client: ollama.Client, node_url: str, listed: list[str]) -> bool:
    """Create on this node the variants whose base it has and that it lacks, and delete the ones Gatehouse
    made that no variant names any more. Returns whether the node's list changed."""
    wanted = {variant.ollama_name: variant for variant in
              Model.objects.filter(variant_of__isnull=False, enabled=True).select_related("variant_of")}
    known = set(Model.objects.filter(variant_of__isnull=False).values_list("ollama_name", flat=True))
    present = set(listed)
    changed = False
    for name, variant in wanted.items():
        if name in present or variant.variant_of.ollama_name not in present:
            continue
        try:
            client.create(model=name, from_=variant.variant_of.ollama_name,
                          parameters={"num_ctx": variant.context_length}, stream=False)
        except (ollama.ResponseError, ConnectionError) as exc:
            log.warning("creating the variant %s on %s failed: %s", name, node_url, exc)
            continue
        log.info("created the variant %s on %s", name, node_url)
        changed = True
    for name in present:
        if VARIANT_MARKER in name and name not in known:
            try:
                client.delete(name)
            except (ollama.ResponseError, ConnectionError) as exc:
                log.warning("deleting the old variant %s on %s failed: %s", name, node_url, exc)
                continue
            changed = True
    return changed
