"""The top: the command line, the scheduler, the night's stage order, `check` and `score`.

Only `pipeline` wires the stages together; `cli` and `scheduler` parse, set up logging
and call it.
"""
