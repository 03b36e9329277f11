"""Adapters: the only code that talks to the outside world or holds a format's rules.

gemini (Google's API), store (the database and image files), prompts (the JSON spec),
imaging (Pillow). They depend on config and errors only; nothing here imports discord.
"""
