"""From a project directory to a validated Project: YAML, schema, semantics, templating."""
