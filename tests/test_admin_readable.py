"""The admin names every row and shows sizes as people read them (issue 15): a model on a node is
"llama3.2:3b on http://...", not "NodeModel object (1)", and sizes are "1.9 GiB", not 2019393189."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from inference.admin import human_size
from inference.models import Model, Node, NodeModel
from tests.conftest import CHAT_MODEL

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(world, superuser_client) -> Client:
    return superuser_client


@pytest.mark.parametrize(("size", "shown"), [(0, "0 bytes"), (1023, "1023 bytes"), (1024, "1.0 KiB"),
                                             (2 << 30, "2.0 GiB"), (2_019_393_189, "1.9 GiB"),
                                             (512 << 20, "512.0 MiB"), (3 << 40, "3.0 TiB")])
def test_human_size(size, shown):
    assert human_size(size) == shown


def test_every_model_has_a_name_of_its_own():
    from django.apps import apps

    for model in apps.get_models():
        if model.__module__.split(".")[0] in ("inference", "apiaccess", "usage", "portal"):
            assert "__str__" in {name for klass in model.__mro__[:-2] for name in vars(klass)}, model


def test_a_node_page_names_its_models_and_their_sizes(staff):
    node = Node.objects.get(models__public_id=CHAT_MODEL)
    node.gpu_memory_bytes = 24 << 30
    node.save()
    on_node = NodeModel.objects.get(node=node, model__public_id=CHAT_MODEL)
    page = staff.get(f"/admin/inference/node/{node.pk}/change/").content.decode()
    assert "NodeModel object" not in page
    assert f"{CHAT_MODEL} on {node}" in page
    assert human_size(on_node.size_bytes) in page and f">{on_node.size_bytes}<" not in page
    listing = staff.get("/admin/inference/node/").content.decode()
    assert "24.0 GiB" in listing


def test_the_model_list_and_page_show_sizes_people_read(staff):
    chat = Model.objects.get(public_id=CHAT_MODEL)
    listing = staff.get("/admin/inference/model/").content.decode()
    assert human_size(chat.size_bytes) in listing and str(chat.size_bytes) not in listing
    page = staff.get(f"/admin/inference/model/{chat.pk}/change/").content.decode()
    assert human_size(chat.size_bytes) in page
    assert not re.search(r'name="size_bytes"', page), "the size is read-only"
