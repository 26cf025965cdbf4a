"""HTTP controllers: parse with DTOs, take the current user, call one service function, return."""
