"""Coverage-guided fuzz targets (atheris) for the bytes each side reads from the other.

``python -m fuzz.fuzz_request`` fuzzes the server's request path (:func:`parse_request`, then
:func:`decode_request` with :mod:`vla.codec`); ``python -m fuzz.fuzz_response`` the agent's
response path (:meth:`PolicyClient.receive`). Each module's ``check(data)`` is the oracle, usable
without atheris (``tests/test_fuzz_targets.py`` replays the corpus through it). ``make fuzz``
runs both; ``fuzz/make_corpus.py`` writes the seeds in ``fuzz/corpus/<target>/``.
"""
