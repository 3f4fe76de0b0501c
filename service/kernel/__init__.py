"""The kernel: the shared vocabulary and its pure functions, at the bottom of every import.

`catalog.py` names the actions, resource types, statuses and roles; `facts.py` the frozen facts a decision
is made on and the values computed from stored ones; `usernames.py` a username's lookup key and its
look-alike skeletons. Nothing here imports the rest of the service: storage and the policy import only
the kernel, so what they share is stated once, below both.
"""
