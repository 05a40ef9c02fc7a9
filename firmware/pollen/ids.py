# Node ids from config files and commands, and the error every config or
# command field reports with: it names the field and what was expected.


class ConfigError(ValueError):
    pass


class Values:
    # A node's checked settings as plain attributes (settings.Settings checks
    # them; this holds no code, so the checker can leave the heap after start).
    pass


def fail(field, expected, got):
    raise ConfigError("config field '%s': expected %s, got %r" % (field, expected, got))


def parse_node_id(v, field="node_id"):
    if isinstance(v, str):
        try:
            v = int(v, 16)
        except ValueError:
            fail(field, "a node id of up to 8 hex digits", v)
    if not isinstance(v, int) or isinstance(v, bool) or not 0 < v < 0xFFFFFFFF or v & 0xFF == 0:
        fail(field, "a 32-bit id, not 0 or ffffffff, whose last byte is not 00", v)
    return v
