"""Security gates: scanners, least privilege, hostile input, the token kept secret."""
