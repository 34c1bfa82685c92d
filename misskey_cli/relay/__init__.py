"""``mkstream proxy``: relay a client's Misskey traffic to a server and watch it, both ways.

``wire.py`` is the relay (an asyncio server that copies bytes and observes the frames in them),
``watch.py`` the Misskey knowledge about one socket (what the server will silently ignore),
``proxy.py`` the command: records through the output pipeline, warnings, ``--record``, the exits.
The layer sits above ``run`` (whose pieces it reuses to assemble a run) and below ``cli``.
"""
