"""``cssl serve``: a fine-tuned model behind a small local HTTP and WebSocket service, with a page to try it."""
