"""rawexec.cli"""
