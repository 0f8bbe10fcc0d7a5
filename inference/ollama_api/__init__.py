"""Ollama's native API under /ollama, for clients that speak it (Continue's and Cline's Ollama providers,
Open WebUI's Ollama connection): its requests become canonical requests, canonical parts become its NDJSON."""
