"""Conversations: messages read into intents, sessions that apply them turn by turn, the terminal REPL."""
