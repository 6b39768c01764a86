"""Conversations: chat sessions that refine a history turn by turn, and the terminal REPL."""
