"""bcls.data"""
