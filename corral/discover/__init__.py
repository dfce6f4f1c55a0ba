"""Discovery: find the batch jobs hidden in crontabs and timers on many hosts.

``parse`` turns text into entries (pure), ``inventory`` holds hosts, entries
and findings, ``collect`` reads files (a saved folder, this machine) and
hands them to the pure ``collect.analyse_host``.
"""
