"""Case files: the YAML source with the line of every key (`yaml_source`), the schema as frozen pydantic models
(`schema`), schema errors as `path:line: location: message` (`validation_messages`), cross-references pydantic
cannot see (`references`), a whole file read and validated (`casefile`), which YAML files are case files
(`discovery`), and what a case runs against (`plan`: `TargetKey`, `CasePlan`).

Pure data: no torch, no model. May import: `common`. Imported by: every room above it.
"""
