"""The OpenAI front protocol: its request schemas and their validation, how a validated body becomes the
canonical generation request (inference/engines/request.py), and how canonical parts are rendered as
OpenAI's objects, stream chunks and errors."""
