"""Commands that work without Discord: `prompt validate|compile` and `render`."""
