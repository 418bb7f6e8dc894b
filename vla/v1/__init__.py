"""Generated from ``proto/vla/v1/policy.proto`` by ``make proto``; do not edit by hand."""
