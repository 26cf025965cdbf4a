"""taskapi: a multi-user task management REST API."""
