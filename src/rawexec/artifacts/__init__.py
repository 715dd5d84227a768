"""rawexec.artifacts"""
