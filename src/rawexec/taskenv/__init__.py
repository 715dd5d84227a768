"""rawexec.taskenv"""
