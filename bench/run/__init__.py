"""The run stage: a pytest session to one saved run (the plugin's hooks, options, data, saving, journal, progress).

bench/conftest.py only registers its plugin; the measuring is bench/measure/'s (docs/design.md).
"""
