def test_the_extension_is_updated_only_when_the_server_has_a_newer_one() -> None:
    from marketpipe.sinks.migrations import extension_update

    assert extension_update("2.14.2", "2.17.2") == "2.17.2"  # after an image bump
    assert extension_update("2.17.2", "2.17.2") is None
    assert extension_update(None, "2.17.2") is None  # available, not installed: nothing to do
    assert extension_update(None, None) is None
