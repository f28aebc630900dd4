"""The gRPC edge: validation, conversion, error mapping and the servicer."""
