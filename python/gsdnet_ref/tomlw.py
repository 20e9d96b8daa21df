"""TOML writing for manifests and golden cases (the subset they use), without torch:
export.py and make_golden.py share it."""


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(type(v))


def write_toml(tables: dict) -> str:
    lines = []
    for tname, body in tables.items():
        lines.append(f"[{tname}]")
        for k, v in body.items():
            if isinstance(v, list) and v and isinstance(v[0], dict):
                lines.append(f"{k} = [")
                lines += [f"  {_toml_value(x)}," for x in v]
                lines.append("]")
            else:
                lines.append(f"{k} = {_toml_value(v)}")
        lines.append("")
    return "\n".join(lines)
