"""rawexec.api"""
