"""Version fields of stemboard's JSON files (presets, MIDI maps)."""


def check_version(version, supported, *, what, source, error):
    """Validate a file's ``version`` field; raise ``error`` naming ``source`` if bad.

    Older versions are accepted (the caller migrates them); a newer one than
    ``supported`` is refused with a hint to upgrade.
    """
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise error(f"{source}: 'version' must be a positive integer, got {version!r}")
    if version > supported:
        raise error(f"{source}: {what} version {version} is newer than this stemboard "
                    f"supports ({supported}); upgrade stemboard")
    return version
