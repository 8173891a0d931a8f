"""The Python API, as in a notebook: validate, run, then read tables and decoded maps."""

import benchmark

spec = benchmark.validate("jobs/examples/captum_method.yaml", build=True)  # fails here, before any work
results = benchmark.run(spec, out="runs/example-notebook", executor="inline", progress=False)

ssim = results.frame("randomization", metric="ssim", normalization="second_moment", absolute=False)
print(ssim.groupby(["method", "stage"])["value"].mean().unstack())
print(results.sql_frame("SELECT method, avg(auc) AS auc FROM occlusion GROUP BY method ORDER BY auc"))

image = results.maps(kind="input")[0]  # the first saved image, [H, W, 3] in [0, 1]
gradcam = results.maps(method="gradcam", stage=0, image_id=image.image_id)[0]  # the trained model's map, [H, W]

from captum.attr import visualization

figure, axis = visualization.visualize_image_attr(
    gradcam.array[..., None], image.array, method="blended_heat_map", sign="all", use_pyplot=False
)
figure.savefig("runs/example-notebook/gradcam.png")
