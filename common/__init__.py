"""Helpers every app shares. A leaf: nothing here imports an app of this project (portal, apiaccess,
inference, usage), so any app may import it without making a cycle."""
