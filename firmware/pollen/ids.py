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
    n = v  # v as given, for the error
    if isinstance(v, str):
        try:
            n = int(v, 16)
        except ValueError:
            fail(field, "a node id of up to 8 hex digits", v)
    if not isinstance(n, int) or isinstance(n, bool) or not 0 < n < 0xFFFFFFFF or n & 0xFF == 0:
        fail(field, "a 32-bit id, not 0 or ffffffff, whose last byte is not 00", v)
    return n
