"""Pure Block Kit builders: data in, `slack_sdk.models` out, no I/O."""
