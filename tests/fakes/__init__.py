"""Local stand-ins for outside services, answering in the real services' shapes."""
