"""newsletter: compose articles into emails, schedule and send them to subscribers.

The command line (``newsletter.cli``) only wires things together; every
operation is a plain function in this package, callable from Python.
"""

__version__ = "0.1.0"
