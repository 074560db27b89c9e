"""How this package's processes start, print and end.

Why this package exists: the commands, the local worker processes and the
model's loader share a little process plumbing that is not the model: how
TensorFlow is imported, the quiet console, the garbage collector's pause
while a process imports, the quick exit of a finished process, and the few
private names of Beam, TensorFlow and CPython that no public route replaces
(`runtime.internals`). It sits below ``model``, ``transforms`` and
``pipeline`` and imports none of them; importing it imports no Beam, so the
commands can use it before Beam is imported.
"""
