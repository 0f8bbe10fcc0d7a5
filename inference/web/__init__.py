"""HTTP plumbing of the API routes: the view decorator, body limits and JSON answers, request ids, CORS,
and the one module that turns the scheduler's domain errors into HTTP answers."""
