"""rawexec.driver"""
