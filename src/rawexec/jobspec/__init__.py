"""rawexec.jobspec"""
