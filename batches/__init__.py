"""The OpenAI Batch API: files of requests (batches/files.py), and later the batches that run them."""
