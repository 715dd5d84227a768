"""rawexec.executor"""
