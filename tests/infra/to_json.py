"""Prints infra files as one JSON object {path: parsed document}, for tests/pipeline/infra.rs.

.tf files are parsed with python-hcl2 (string literals without their quotes; expressions
kept as "${...}" text), .yml/.yaml with PyYAML's safe loader. A file that does not parse
is a failure naming the file (exit status 1).
"""

import json
import sys


def parse_hcl(path):
    import hcl2
    from hcl2.utils import SerializationOptions

    options = SerializationOptions(
        with_comments=False, explicit_blocks=False, strip_string_quotes=True
    )
    with open(path, encoding="utf-8") as file:
        return hcl2.load(file, serialization_options=options)


def parse_yaml(path):
    import yaml

    with open(path, encoding="utf-8") as file:
        return yaml.safe_load(file)


def main(paths):
    documents = {}
    failures = []
    for path in paths:
        try:
            if path.endswith(".tf"):
                documents[path] = parse_hcl(path)
            elif path.endswith((".yml", ".yaml")):
                documents[path] = parse_yaml(path)
            else:
                failures.append(f"{path}: neither .tf nor .yml/.yaml")
        except Exception as error:  # any parse error is the file's fault: report it
            failures.append(f"{path}: {type(error).__name__}: {error}")
    if failures:
        print("\n".join(failures), file=sys.stderr)
        return 1
    json.dump(documents, sys.stdout, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
