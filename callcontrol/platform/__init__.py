"""The multi-server platform (issue 13): the processes of an edge deployment on one machine
(rtpengine, Kamailio, N Asterisk sandboxes each with its own ``callcontrol run``) and the
operator commands on them (``callcontrol platform up|down|status|drain|undrain``).

Importing this package is cheap: each module imports what it needs.
"""
