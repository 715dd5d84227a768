"""rawexec.plugin"""
