"""rawexec.containment"""
