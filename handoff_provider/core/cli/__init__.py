"""The ``handoff`` console script: its verbs and the runtime container's contract."""
