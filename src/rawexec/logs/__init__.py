"""rawexec.logs"""
