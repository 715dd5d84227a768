"""rawexec.agent"""
