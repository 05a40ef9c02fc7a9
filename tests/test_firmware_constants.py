# The firmware's numbers shared between modules (frame types, flags, sizes,
# job kinds) are private const() copies in each module that uses them:
# MicroPython builds a `_` const into the code and keeps no name for it
# (a public name costs a node an interned string and a dict slot). Hosts see
# them by their public names through _compat.publish. These tests hold every
# copy to the module that publishes it, and make sure no firmware module
# imports a name that exists only through publish (it would work under
# CPython and fail on a node).
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIRMWARE = ROOT / "firmware"


def _modules():
    for path in sorted(FIRMWARE.rglob("*.py")):
        rel = path.relative_to(FIRMWARE).with_suffix("")
        name = ".".join(rel.parts[:-1] if rel.parts[-1] == "__init__" else rel.parts)
        yield name, path, ast.parse(path.read_text(), str(path))


def _constants(tree):
    # {"_NAME": value} of the module's top-level `_NAME = const(expr)`, and
    # of plain `_NAME = literal` copies (a host-only module's, say)
    out = {}
    for node in tree.body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)):
            continue
        name, value = node.targets[0].id, node.value
        if name[:1] != "_" or not name[1:2].isupper():
            continue
        if isinstance(value, ast.Call) and getattr(value.func, "id", "") == "const":
            value = value.args[0]
        elif not isinstance(value, ast.Constant):
            continue
        out[name] = eval(compile(ast.Expression(value), "<const>", "eval"), {}, dict(out))
    return out


def _publishes(tree):
    return any(isinstance(n, ast.Expr) and isinstance(n.value, ast.Call)
               and getattr(n.value.func, "id", "") == "publish" for n in tree.body)


def _defined(tree):
    # names the module binds at its top level (what a node can import):
    # its statements', and those of top-level if, try and with blocks
    names = set()
    todo = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            for t in (node.targets if isinstance(node, ast.Assign) else [node.target]):
                names.update(n.id for n in ast.walk(t) if isinstance(n, ast.Name))
        elif isinstance(node, (ast.If, ast.Try, ast.With)):
            for part in ("body", "orelse", "finalbody"):
                todo.extend(getattr(node, part, []))
            for h in getattr(node, "handlers", []):
                todo.extend(h.body)
    return names


MODULES = {name: (path, tree) for name, path, tree in _modules()}
OWNERS = {name: _constants(tree) for name, (path, tree) in MODULES.items() if _publishes(tree)}


def test_the_modules_that_publish_their_numbers_are_found():
    assert {"pollen.wire", "pollen.jobs", "pollen.crypto", "pollen.files", "pollen.sharing"} <= set(OWNERS)
    assert OWNERS["pollen.wire"]["_MSG"] == 3 and OWNERS["pollen.jobs"]["_J_FLOOD"] == 1


def test_every_private_copy_has_its_owners_value():
    wrong = []
    for name, (path, tree) in MODULES.items():
        for const, value in _constants(tree).items():
            for owner, numbers in OWNERS.items():
                if owner != name and const in numbers and numbers[const] != value:
                    wrong.append("%s: %s = %r, but %s has %r" % (path.name, const, value, owner, numbers[const]))
    assert not wrong, wrong


def test_no_firmware_module_imports_a_name_only_hosts_have():
    # `from pollen.wire import MSG` runs under CPython (publish) and fails
    # on a node; so does `wire.MSG`
    bad = []
    for name, (path, tree) in MODULES.items():
        aliases = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module in MODULES:
                have = _defined(MODULES[node.module][1])
                bad += ["%s: from %s import %s" % (path.name, node.module, a.name)
                        for a in node.names
                        if a.name not in have and node.module + "." + a.name not in MODULES]
            if isinstance(node, ast.ImportFrom) and node.module == "pollen":
                aliases.update({a.asname or a.name: "pollen." + a.name for a in node.names})
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and aliases.get(node.value.id) in MODULES):
                target = aliases[node.value.id]
                if node.attr not in _defined(MODULES[target][1]):
                    bad.append("%s: %s.%s" % (path.name, node.value.id, node.attr))
    assert not bad, bad


def test_hosts_see_the_public_names():
    from pollen import crypto, files, jobs, sharing, wire
    assert (wire.MSG, wire.BROADCAST, wire.F_WANT_ACK, crypto.TAG_BYTES) == (3, 0xFFFFFFFF, 0x80, 8)
    assert (jobs.J_STORED, files.CHUNK_BYTES, sharing.FETCH_RECORD) == (3, 200, "q")
