from ipykernel.kernelapp import IPKernelApp

from .kernel import ACAKernel

IPKernelApp.launch_instance(kernel_class=ACAKernel)
