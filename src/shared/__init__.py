"""Code both functions use: the job table's record updates and what logs may show."""
