"""Lightning callbacks: sample/audio logging, evaluation, attention figures (import from the submodules)."""
