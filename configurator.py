"""
Settings, as nanoGPT's configurator: a module's settings are the plain module-level names of its settings block
(between two `# ----` lines, each with a one-line comment). `--config FILE.py` (plain assignments, executed) and
`--key=value` override them in order, type-checked against the defaults; later arguments win.

    import configurator
    cfg = configurator.configure(sys.argv[1:], [globals(), vars(other_module)], root)
    print(configurator.help_text([sys.modules[__name__], other_module], usage))

A mistake (unknown key, wrong type, missing file) raises UsageError, whose one line names the key, file or line.
"""
import ast
import difflib
import os
import traceback


class UsageError(ValueError):
    """A bad setting, argument or file: the program prints its one line and exits with status 2."""


def parse_value(text, default):
    """A --key=value string as the type of its default: a Python literal where one parses, else the raw string; for
    a tuple, words separated by commas are a tuple of strings (--benchmarks=aime24,math500) and one number a tuple
    of one (--hard_levels=7)."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = text
    if isinstance(default, str):
        return text
    if isinstance(default, bool) and isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if isinstance(default, tuple) and isinstance(value, str):
        return tuple(word.strip() for word in text.strip().strip("()").split(",") if word.strip())
    if isinstance(default, tuple) and isinstance(value, (int, float)) and not isinstance(value, bool):
        return (value,)  # one level: --hard_levels=7
    return value


def check_type(key, value, default, where):
    ok = (isinstance(value, bool) if isinstance(default, bool)
          else isinstance(value, (int, float)) and not isinstance(value, bool) if isinstance(default, float)
          else isinstance(value, int) and not isinstance(value, bool) if isinstance(default, int)
          else isinstance(value, (tuple, list)) if isinstance(default, tuple)
          else isinstance(value, type(default)))
    if not ok:
        raise UsageError(f"{where}: {key} must be {type(default).__name__} like its default {default!r}, "
                         f"got {value!r}")
    return tuple(value) if isinstance(default, tuple) else float(value) if isinstance(default, float) else value


def unknown_key(key, keys, where):
    near = difflib.get_close_matches(key, keys, n=3, cutoff=0.5)
    return UsageError(f"{where}: unknown config key {key!r}" + (f"; did you mean {', '.join(near)}?" if near else
                                                               "; --help lists the keys"))


def resolve_config_path(name, root):
    for candidate in (name, os.path.join(root, name), os.path.join(root, "configs", name)):
        if os.path.isfile(candidate):
            return candidate
    raise UsageError(f"config file {name!r} not found (looked in ., {root} and {root}/configs)")


def configure(argv, namespaces, root):
    """Apply `--config FILE.py` and `--key=value` overrides to namespaces (modules' globals, each with its
    config_keys). Returns {key: value} over all of them."""
    owner = {k: ns for ns in namespaces for k in ns["config_keys"]}
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg == "--config" or arg.startswith("--config="):
            name = arg.split("=", 1)[1] if "=" in arg else (args.pop(0) if args else "")
            path = resolve_config_path(name, root)
            try:
                with open(path, encoding="utf-8") as f:
                    source = f.read()
            except (OSError, UnicodeDecodeError) as e:
                raise UsageError(f"{path}: cannot read the config file ({e})") from None
            values = {}
            try:
                exec(compile(source, path, "exec"), {}, values)
            except Exception as e:  # a config file that is not plain Python
                frames = [f.lineno for f in traceback.extract_tb(e.__traceback__) if f.filename == path]
                line = getattr(e, "lineno", None) if isinstance(e, SyntaxError) else (frames or ["?"])[-1]
                raise UsageError(f"{path}:{line}: {type(e).__name__}: {e}") from e
            for key, value in values.items():
                if key.startswith("_") or callable(value) or type(value).__name__ == "module":
                    continue
                line = next((i + 1 for i, text in enumerate(source.splitlines())
                             if text.split("=")[0].strip() == key), "?")
                if key not in owner:
                    raise unknown_key(key, list(owner), f"{path}:{line}")
                owner[key][key] = check_type(key, value, owner[key][key], f"{path}:{line}")
        elif arg.startswith("--") and "=" in arg:
            key, text = arg[2:].split("=", 1)
            if key not in owner:
                raise unknown_key(key, list(owner), "command line")
            owner[key][key] = check_type(key, parse_value(text, owner[key][key]), owner[key][key], f"--{key}")
        else:
            raise UsageError(f"command line: cannot read argument {arg!r}; use --config FILE.py or --key=value "
                             f"(--help lists the keys)")
    return {k: ns[k] for k, ns in owner.items()}


def settings_block(path):
    """[(key, comment)] of a file's settings block, read from its source; a comment-only line is a section title (key
    None) or, indented, the continuation of the comment above it."""
    with open(path) as f:
        lines = f.read().splitlines()
    marks = [i for i, line in enumerate(lines) if line.startswith("# ----")][:2]
    block = "\n".join(lines[marks[0] + 1:marks[1]])
    assigned = {node.lineno: (node.targets[0].id, node.end_lineno) for node in ast.parse(block).body
                if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)}
    out, block_lines, i = [], block.splitlines(), 0
    while i < len(block_lines):
        text, lineno = block_lines[i], i + 1
        if lineno in assigned:
            key, end = assigned[lineno]
            comment = " ".join(l.split("#", 1)[1].strip() for l in block_lines[lineno - 1:end] if "#" in l)
            i = end
            while i < len(block_lines) and block_lines[i].startswith(" ") and block_lines[i].strip().startswith("#"):
                comment += " " + block_lines[i].strip()[1:].strip()
                i += 1
            if key != "config_keys":
                out.append((key, comment))
            continue
        if text.startswith("#"):
            out.append((None, text[1:].strip()))
        i += 1
    return out


def help_text(modules, usage):
    """usage, then every setting of the modules' settings blocks: --key=default (the module's current value) and its
    comment."""
    out = [usage]
    for module in modules:
        out.append(f"\n{os.path.basename(module.__file__)}:")
        for key, comment in settings_block(module.__file__):
            if key is None:
                out.append(f"  {comment}")
                continue
            value = getattr(module, key)  # a string as typed on the command line, anything else as Python writes it
            shown = value if isinstance(value, str) and value.isprintable() else repr(value)
            out.append(f"    --{key}={shown}".ljust(36) + f"  {comment}")
    return "\n".join(out)
